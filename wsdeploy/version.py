"""The package version, in a leaf module so that any module can record it without importing the
package root (``wsdeploy/__init__.py``)."""

__version__ = "0.1.0"
