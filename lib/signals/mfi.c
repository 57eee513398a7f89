/* mfi.c - placeholder (being written). */
