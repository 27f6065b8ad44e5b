'use strict'
require('../lib/db-suite').databaseSuite('CLOUD_API')
