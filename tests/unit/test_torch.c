/* test_torch.c - PLACEHOLDER */
#include "test.h"
int main(void) { return 0; }
