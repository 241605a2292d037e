from glimpse.cli.main import main

raise SystemExit(main())
