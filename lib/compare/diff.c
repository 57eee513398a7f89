/* diff.c - placeholder. */
