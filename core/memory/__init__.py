"""Paged KV memory: page allocator, KV pool, per-request page table, radix prefix cache."""

from anyware.memory.allocator import OutOfPagesError, PageAllocator
from anyware.memory.kv_move import move_kv
from anyware.memory.kv_pool import KVPool, pages_for_budget
from anyware.memory.page_table import PageTable

__all__ = ["KVPool", "OutOfPagesError", "PageAllocator", "PageTable", "move_kv",
           "pages_for_budget"]
