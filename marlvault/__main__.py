from marlvault.cli import main

main()
