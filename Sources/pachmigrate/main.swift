import PachmigrateCLI

Pachmigrate.runMain()
