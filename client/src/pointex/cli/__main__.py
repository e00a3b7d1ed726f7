"""Run the `pointex` command line: `python -m pointex.cli`."""

from pointex.cli.main import main

raise SystemExit(main())
