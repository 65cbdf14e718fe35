"""KV-cache blocks: who holds which, and which full blocks can be shared. Pure Python, no torch.

The cache is a pool of fixed-size blocks; a sequence holds a block table (its blocks in order).
A full block whose keys and values are computed is registered under a hash of its tokens and of
every token before it (the hash of the previous block): a later sequence whose prompt starts with
the same tokens reuses those blocks instead of computing them again (prefix caching). A block
nobody holds stays cached until its place is needed; the least recently freed goes first (LRU).
Only full, computed blocks are shared, and they never change, so sharing needs no copy on write.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from workers.engine.sequence import Sequence


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None  # set once the block is full and computed: it can then be shared
    token_ids: tuple[int, ...] = field(default_factory=tuple)


def block_hash(parent: int | None, token_ids: tuple[int, ...]) -> int:
    """A full block's identity: its tokens and, through the parent's hash, every token before them."""
    return hash((parent, token_ids))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1:
            raise ValueError("the KV cache needs at least one block")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))  # oldest first
        self.cached: dict[int, int] = {}  # hash -> block id of a full, computed block
        self.num_prefix_queries = 0  # prompt tokens looked up at admission
        self.num_prefix_hits = 0  # of those, tokens found cached

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def usage(self) -> float:
        """The share of blocks held by sequences (cached but unheld blocks count as free)."""
        return 1.0 - self.num_free / self.num_blocks

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # --- admission ---

    def _prefix_hits(self, seq: Sequence) -> list[int]:
        """Block ids of the longest cached prefix of seq's tokens; at least its last token is left to
        compute (its logits are needed)."""
        if not self.enable_prefix_caching or not seq.use_prefix_cache:
            return []
        hits: list[int] = []
        parent: int | None = None
        tokens = seq.all_ids
        for start in range(0, seq.num_tokens - 1 - (self.block_size - 1), self.block_size):
            chunk = tuple(tokens[start : start + self.block_size])
            h = block_hash(parent, chunk)
            block_id = self.cached.get(h)
            if block_id is None or self.blocks[block_id].token_ids != chunk:
                break
            hits.append(block_id)
            parent = h
        return hits

    def can_allocate(self, seq: Sequence) -> bool:
        """Whether seq's whole context fits now (its cached prefix shared, the rest in free blocks)."""
        hits = self._prefix_hits(seq)
        hits_in_free = sum(1 for b in hits if b in self.free)
        return self.blocks_for(seq.num_tokens) - len(hits) <= self.num_free - hits_in_free

    def allocate(self, seq: Sequence) -> int:
        """Give seq blocks for its whole context; returns how many of its tokens are already computed
        (the cached prefix it shares)."""
        assert not seq.block_table, f"{seq.seq_id} already holds blocks"
        hits = self._prefix_hits(seq)
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
        for _ in range(self.blocks_for(seq.num_tokens) - len(hits)):
            seq.block_table.append(self._take_free())
        seq.num_hashed_blocks = len(hits)
        if seq.use_prefix_cache:
            self.num_prefix_queries += seq.num_tokens
            self.num_prefix_hits += len(hits) * self.block_size
        return len(hits) * self.block_size

    def _take_free(self) -> int:
        block_id, _ = self.free.popitem(last=False)  # the least recently freed
        block = self.blocks[block_id]
        if block.hash is not None and self.cached.get(block.hash) == block_id:
            del self.cached[block.hash]  # evicted: its contents are about to be overwritten
        block.hash, block.token_ids, block.ref_count = None, (), 1
        return block_id

    # --- growth and release ---

    def can_append(self, seq: Sequence) -> bool:
        """Whether the next token's keys and values have room (a new block when the table is full)."""
        return len(seq.block_table) * self.block_size >= seq.num_tokens or self.num_free > 0

    def append_slot(self, seq: Sequence) -> None:
        """Make room for the key and value of seq's last token (position num_tokens - 1)."""
        if len(seq.block_table) * self.block_size < seq.num_tokens:
            seq.block_table.append(self._take_free())

    def register_computed(self, seq: Sequence) -> None:
        """Register seq's blocks that became full and computed (shareable from now on)."""
        if not self.enable_prefix_caching or not seq.use_prefix_cache:
            return
        tokens = seq.all_ids
        while (seq.num_hashed_blocks + 1) * self.block_size <= seq.num_cached:
            index = seq.num_hashed_blocks
            parent = self.blocks[seq.block_table[index - 1]].hash if index else None
            chunk = tuple(tokens[index * self.block_size : (index + 1) * self.block_size])
            block = self.blocks[seq.block_table[index]]
            if block.hash is None:
                block.hash, block.token_ids = block_hash(parent, chunk), chunk
                self.cached.setdefault(block.hash, block.block_id)
            seq.num_hashed_blocks += 1

    def deallocate(self, seq: Sequence) -> None:
        """Release seq's blocks; those nobody else holds become free (and stay cached if full)."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table = []
        seq.num_hashed_blocks = 0
