"""The notebook layer: plots, audio and widgets. The only code in the kit that imports matplotlib, IPython or
ipywidgets; imported lazily by ``musicvae_course`` so a student kernel pays for it only when it draws.
"""
