from serenchat.cli import main

main()
