"""blocks/channels"""
