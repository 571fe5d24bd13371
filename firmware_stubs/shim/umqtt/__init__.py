"""micropython-lib's umqtt package, over paho-mqtt."""
