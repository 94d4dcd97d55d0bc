"""wsdeploy.export."""
