from fbl.cli import main

raise SystemExit(main())
