"""Skills: finding and loading skill folders (loader), their SKILL.md (manifest), the
person's trust in user skills (trust), and the fast phrase path (phrases, intents).
"""
