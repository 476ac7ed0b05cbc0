def test_import():
    import flipnet_rt.sampling
