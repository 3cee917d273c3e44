"""Settings and the home folder: config/default.yaml merged with the user's file and
validated (settings), and the paths inside agentd's home folder (paths).
"""
