"""Heroku, container stack: app.json validates against a schema written from Heroku's reference, names
a Redis add-on, the web and worker formation and the config vars a public deploy needs; heroku.yml
builds the Dockerfile and runs the Procfile's commands."""

from __future__ import annotations

import json

import jsonschema
import yaml

from shared.settings import PROJECT_ROOT

HERE = PROJECT_ROOT / "tests" / "deploy"


def test_app_json_validates_and_describes_a_whole_deploy() -> None:
    app = json.loads((PROJECT_ROOT / "app.json").read_text())
    jsonschema.validate(app, json.loads((HERE / "app-json.schema.json").read_text()))
    assert app["stack"] == "container"
    assert any(str(a.get("plan", a)).startswith("heroku-redis") for a in app["addons"])
    assert set(app["formation"]) == {"web", "worker"}
    assert app["env"]["ADMIN_API_KEY"]["generator"] == "secret"  # a public bind refuses to start without it
    assert app["env"]["REDIS_TLS_VERIFY"]["value"] == "0"  # Heroku Redis: rediss:// with a self-signed cert


def test_heroku_yml_builds_the_image_and_runs_the_procfiles_commands() -> None:
    spec = yaml.safe_load((PROJECT_ROOT / "heroku.yml").read_text())
    assert set(spec) == {"build", "run"}
    assert spec["build"]["docker"] == {"web": "Dockerfile", "worker": "Dockerfile"}
    procfile = dict(line.split(": ", 1) for line in (PROJECT_ROOT / "Procfile").read_text().splitlines())
    assert spec["run"] == {"web": procfile["web"], "worker": procfile["worker"]}


def test_app_json_says_its_plans_are_paid() -> None:
    # Heroku has no free plans: a deploy button that bills must say so, plan by plan.
    app = json.loads((PROJECT_ROOT / "app.json").read_text())
    plans = [a["plan"] for a in app["addons"]] + [f["size"] for f in app["formation"].values()]
    readme = (PROJECT_ROOT / "README.md").read_text()
    for plan in plans:
        assert plan in app["description"] and plan in readme, plan
    assert "paid" in app["description"].lower()


def test_workers_hand_back_before_heroku_kills_them() -> None:
    # The dyno manager SIGKILLs 30 s after SIGTERM; a worker drains DRAIN_TIMEOUT, then hands back.
    app = json.loads((PROJECT_ROOT / "app.json").read_text())
    assert int(app["env"]["DRAIN_TIMEOUT"]["value"]) + 10 <= 30
