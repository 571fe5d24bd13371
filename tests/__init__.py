"""The suite. Imported before any conftest or test module, hence the one setting here.

The suite starts hundreds of Python processes (its two workers, and the services and
simulators the server tests run as processes of their own). Where the environment turns
bytecode caching off (``PYTHONDONTWRITEBYTECODE``), each of them would compile the project
again from source, and pytest would rewrite every test module's asserts again in each
worker: the suite writes its caches (``__pycache__``, ignored by git) whatever the
environment says, and its child processes inherit that.
"""

import os
import sys

sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
