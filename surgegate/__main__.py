from surgegate.cli import main

raise SystemExit(main())
