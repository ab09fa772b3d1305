// docs/openapi.yaml must be a valid OpenAPI document (schema-validated, every $ref resolving),
// so that code generators and API tools can read it. Which routes it lists is checked against
// the server by server_e2e_test. Run by ctest: node --test tests/e2e/node/openapi.test.js
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const SwaggerParser = require('@apidevtools/swagger-parser');

const file = path.join(__dirname, '..', '..', '..', 'docs', 'openapi.yaml');

test('docs/openapi.yaml is a valid OpenAPI document', async () => {
  const api = await SwaggerParser.validate(file);
  assert.match(api.openapi, /^3\./);
  const paths = Object.keys(api.paths);
  assert.ok(paths.includes('/ofrep/v1/evaluate/flags/{key}'), 'the OFREP single-flag route is described');
  assert.ok(paths.includes('/api/v1/projects'), 'the admin API is described');
  for (const [route, item] of Object.entries(api.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!['get', 'put', 'post', 'patch', 'delete'].includes(method)) continue;
      assert.ok(op.responses && Object.keys(op.responses).length > 0, `${method.toUpperCase()} ${route} lists its responses`);
    }
  }
});
