from safeeraser.cli import main

main()
