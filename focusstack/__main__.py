from focusstack.cli.app import main

main()
