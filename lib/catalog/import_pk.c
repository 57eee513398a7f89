/* import_pk.c - placeholder (being written). */
