from voice_call.cli.main import main

main()
