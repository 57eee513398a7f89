/* heap.h - malloc tuning for processes that allocate and free large blocks
 * over and over (a CLI scan, the collector's queries).
 *
 * glibc hands freed memory back to the kernel as soon as the top of the
 * heap holds more than 128 KiB free, and serves large blocks from mmap()
 * (unmapped again on free).  A blast radius over a large family allocates
 * tens of MB of hits, sort keys and rows, and frees them at the end: the
 * next query faulted every page in again, a fault at a time, which took a
 * third of its serial part on a virtual machine. */
#pragma once

/* Keeps up to 512 MiB of freed heap for reuse and serves blocks below
 * 64 MiB from it.  Call once, early in main(), before threads start. */
void mp_heap_keep_freed(void);
