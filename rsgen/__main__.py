from rsgen.cli.main import main

main()
