from alignimate.cli import main

main()
