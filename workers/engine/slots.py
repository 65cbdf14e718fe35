"""Which KV-cache slots are free. Pure Python: the scheduler owns it and never touches tensors."""

from __future__ import annotations

import heapq


class SlotAllocator:
    """Hands out the lowest free slot, so running sequences stay packed at the front of the cache
    and a decode step can read their slots as one contiguous range."""

    def __init__(self, num_slots: int) -> None:
        self.num_slots = num_slots
        self._free = list(range(num_slots))  # a min-heap
        self._free_set = set(self._free)

    @property
    def num_free(self) -> int:
        return len(self._free)

    def can_allocate(self) -> bool:
        return bool(self._free)

    def allocate(self) -> int:
        if not self._free:
            raise RuntimeError("no free KV-cache slot")
        slot = heapq.heappop(self._free)
        self._free_set.discard(slot)
        return slot

    def free(self, slot: int) -> None:
        if slot in self._free_set or not 0 <= slot < self.num_slots:
            raise RuntimeError(f"slot {slot} freed twice or out of range")
        heapq.heappush(self._free, slot)
        self._free_set.add(slot)
