"""Where the integration tests find things (set by meson, with defaults for
running a test by hand from the checkout), and the zoo-missing rule: a
missing zoo is said plainly, and is a failure when MODELPROV_REQUIRE_ZOO=1."""
import os
import sys

BIN = os.environ.get("MODELPROV_BIN", "build/cli/modelprov")
ZOO = os.environ.get("MODELPROV_ZOO", "../shared/zoo")
ROOT = os.environ.get("MODELPROV_SOURCE_ROOT", ".")
HAVE_ZOO = os.path.isdir(ZOO)
if not HAVE_ZOO:
    print(f"zoo missing: {ZOO} does not exist; zoo tests are skipped", file=sys.stderr)
    if os.environ.get("MODELPROV_REQUIRE_ZOO") == "1":
        sys.exit("MODELPROV_REQUIRE_ZOO=1 and the zoo is missing")
