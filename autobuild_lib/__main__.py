import sys

from autobuild_lib.cli import main

sys.exit(main())
