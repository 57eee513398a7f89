/* metadata.c - placeholder until MFI/TFV/sketch land. */
#include "signals/metadata.h"

int mp_signals_attach_metadata(const mp_model *m, Modelprov__V1__Signals *s) {
        (void) m;
        (void) s;
        return 0;
}
