"""wsdeploy.serving."""
