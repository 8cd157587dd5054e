from synthorg_tornado.cli.main import main

raise SystemExit(main())
