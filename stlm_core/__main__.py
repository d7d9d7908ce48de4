from stlm_core.cli import main

raise SystemExit(main())
