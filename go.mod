module github.com/usbhotplugd/usbhotplugd

go 1.26.0

require (
	github.com/pilebones/go-udev v0.9.1
	golang.org/x/sys v0.50.0
)

require github.com/BurntSushi/toml v1.6.0 // indirect
