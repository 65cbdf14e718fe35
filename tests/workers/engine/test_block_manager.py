"""The block manager alone: allocation by free blocks, prefix sharing, LRU eviction, reference counts."""

from __future__ import annotations

from tests.workers.engine.factories import make_seqs
from workers.engine.block_manager import BlockManager
from workers.engine.sequence import Sequence


def computed(manager: BlockManager, seq: Sequence) -> None:
    """As after its prefill: every token cached, full blocks registered for sharing."""
    seq.num_cached = seq.num_tokens
    manager.register_computed(seq)


def test_a_shared_prefix_is_reused_block_for_block() -> None:
    manager = BlockManager(num_blocks=16, block_size=4)
    [first] = make_seqs(1, prompt_len=10)
    assert manager.allocate(first) == 0 and len(first.block_table) == 3
    computed(manager, first)  # blocks 0 and 1 are full: shareable; block 2 holds 2 tokens: private
    [second] = make_seqs(1, prompt_len=10, prefix="b")
    second.prompt_ids = [*first.prompt_ids[:8], 99, 98, 97]
    assert manager.allocate(second) == 8  # two full blocks found
    assert second.block_table[:2] == first.block_table[:2] and second.block_table[2] != first.block_table[2]
    assert [manager.blocks[b].ref_count for b in first.block_table] == [2, 2, 1]
    assert manager.num_prefix_hits == 8 and manager.num_prefix_queries == 10 + 11


def test_the_last_token_is_always_computed() -> None:
    manager = BlockManager(num_blocks=16, block_size=4)
    [first] = make_seqs(1, prompt_len=8)
    manager.allocate(first)
    computed(manager, first)
    [same] = make_seqs(1, prompt_len=8, prefix="s")  # the very same 8 tokens: two full blocks
    assert manager.allocate(same) == 4  # the second block is computed again: its logits are needed


def test_different_tokens_before_a_block_make_it_a_different_block() -> None:
    manager = BlockManager(num_blocks=16, block_size=4)
    [first] = make_seqs(1, prompt_len=9)
    manager.allocate(first)
    computed(manager, first)
    [other] = make_seqs(1, prompt_len=9, prefix="o")
    other.prompt_ids = [77, *first.prompt_ids[1:]]  # the second block's own tokens agree, its past does not
    assert manager.allocate(other) == 0


def test_freed_blocks_stay_cached_until_reused_least_recently_freed_first() -> None:
    manager = BlockManager(num_blocks=4, block_size=4)
    [first] = make_seqs(1, prompt_len=9)  # 3 blocks
    manager.allocate(first)
    computed(manager, first)
    manager.deallocate(first)
    assert manager.num_free == 4 and len(manager.cached) == 2  # nobody holds them; still shareable
    [again] = make_seqs(1, prompt_len=9, prefix="a")
    assert manager.can_allocate(again) and manager.allocate(again) == 8
    manager.deallocate(again)
    [big] = make_seqs(1, prompt_len=16, prefix="big")
    big.prompt_ids = [200 + i for i in range(16)]
    manager.allocate(big)  # needs all 4 blocks: the cached ones are evicted
    assert manager.cached == {} and manager.num_free == 0
    assert not manager.can_allocate(make_seqs(1, prompt_len=1, prefix="x")[0])


def test_decode_growth_takes_a_block_at_each_boundary() -> None:
    manager = BlockManager(num_blocks=3, block_size=4)
    [seq] = make_seqs(1, prompt_len=4)
    manager.allocate(seq)
    assert len(seq.block_table) == 1
    seq.output_ids.append(50)  # 5 tokens: position 4 needs a second block
    assert manager.can_append(seq)
    manager.append_slot(seq)
    assert len(seq.block_table) == 2
    manager.append_slot(seq)  # room already there: nothing taken
    assert len(seq.block_table) == 2 and manager.num_free == 1
