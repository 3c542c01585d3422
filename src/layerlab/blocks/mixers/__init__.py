"""blocks/mixers"""
