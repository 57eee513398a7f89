/* param_bucket.c - placeholder (being written). */
