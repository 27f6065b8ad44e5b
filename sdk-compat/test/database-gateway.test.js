'use strict'
require('../lib/db-suite').databaseSuite('GATEWAY')
