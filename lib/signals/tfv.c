/* tfv.c - placeholder (being written). */
