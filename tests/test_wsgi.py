import gc


def test_the_server_entry_point_freezes_the_start_up_heap():
    from agent33 import wsgi

    assert callable(wsgi.application)
    assert gc.get_freeze_count() > 0
