"""Framework-neutral data: finding the PH2 and MADS files, reading and checking images and masks.

Everything here returns numpy arrays or plain paths; the framework packages only wrap it.
"""
