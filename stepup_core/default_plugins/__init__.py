"""Built-in hook implementations, registered by ``get_plugin_manager``."""
