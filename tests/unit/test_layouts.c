/* test_layouts.c - PLACEHOLDER */
#include "test.h"
int main(void) { return 0; }
