/* test_signals.c - placeholder (being written). */
#include "test.h"

int main(void) {
        return 0;
}
