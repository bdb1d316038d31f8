import PachmigrateCLI

Pachmigrate.main()
