/* test_tokenizers.c - PLACEHOLDER */
#include "test.h"
int main(void) { return 0; }
