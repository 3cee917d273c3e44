"""The command line: argument parsing and printing only; the work lives in the packages.
"""
