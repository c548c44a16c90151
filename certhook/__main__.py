from certhook.cli import main

raise SystemExit(main())
