"""`agentd eval`: home-assistant-style cases run through the real agent turn, scored.

    cases.py    the case file (YAML) as pydantic models; loading names the file, case and key
    home.py     the simulated home the eval's device tools act on (no broker, no Home Assistant)
    score.py    one case's verdict: expected calls against the calls the model made
    runner.py   runs cases through `Agent.respond`, one fresh store and home state per case
    report.py   the figures (success with a Wilson interval, validity, ...), a rich table, JSON
    cli.py      the `eval` subcommand
"""
