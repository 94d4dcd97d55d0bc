"""`python -m wsdeploy ...` is the same as the `wsdeploy` command."""
import sys

from wsdeploy.cli.main import main

sys.exit(main())
