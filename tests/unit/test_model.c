/* test_model.c - PLACEHOLDER */
#include "test.h"
int main(void) { return 0; }
