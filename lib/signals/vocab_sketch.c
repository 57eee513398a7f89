/* vocab_sketch.c - placeholder (being written). */
